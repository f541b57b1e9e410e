"""The typer application that every command module registers on."""

import typer

app = typer.Typer(
    name="lookalike",
    help="Train, evaluate and serve image-retrieval models by deep metric learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        from lookalike._version import __version__

        typer.echo(f"lookalike {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train, evaluate and serve image-retrieval models by deep metric learning."""
