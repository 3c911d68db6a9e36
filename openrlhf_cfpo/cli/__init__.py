"""The ``openrlhf-cfpo`` console script: one sub-command per job (see ``main.SUBCOMMANDS``)."""
