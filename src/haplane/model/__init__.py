"""The pure model: validated values, registry records, the HAProxy model, the plan's operations (ops), Change.
See README.md."""
