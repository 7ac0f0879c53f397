"""The ``regretflow`` command: its subcommands, the daemon and the demo."""
