from distilflow.cli import app

app(prog_name="distilflow")
