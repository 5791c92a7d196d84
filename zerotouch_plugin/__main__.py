from zerotouch_plugin.cli import run

run()
