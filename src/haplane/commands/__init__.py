"""One module per ``haplane`` subcommand. Each defines ``HELP`` (one line), ``DESCRIPTION`` (the --help
text), ``configure(parser)`` (its arguments) and ``run(args) -> int`` (exit status). Heavy imports happen
inside ``run`` so ``haplane --help`` stays fast."""
