from prep.cli import app

app(prog_name="alexnet-prep")
