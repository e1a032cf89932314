"""The ``dicomml`` command line: one module per subcommand."""
