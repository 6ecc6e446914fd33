from pathlib import Path

import click


def register(app):
    @app.cli.group()
    def banner():
        """Like `flask translate`: build files into the release."""

    @banner.command()
    def compile():
        """Compile app/banner.src into app/static/banner.txt."""
        source = Path(app.root_path) / "banner.src"
        (Path(app.root_path) / "static" / "banner.txt").write_text(
            source.read_text().strip().upper() + "\n")
        click.echo("compiled the banner")
