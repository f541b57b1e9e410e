"""The typer application that every command module registers on."""

import typer

app = typer.Typer(
    name="lookalike",
    help="Train, evaluate and serve image-retrieval models by deep metric learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
