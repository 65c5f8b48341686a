"""The pure model: validated values, registry records, the HAProxy model, Change. See README.md."""
