"""{{ cookiecutter.project_name }}: an mlsteps pipeline (``pipeline.yaml`` in the project directory)."""
