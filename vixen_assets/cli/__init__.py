"""The ``vixen-assets`` command: one module per subcommand, each with ``register(subparsers)``."""
