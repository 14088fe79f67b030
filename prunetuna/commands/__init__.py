"""The CLI's verbs, one module each; ``prunetuna.cli`` assembles them into the ``prunetuna`` command."""
