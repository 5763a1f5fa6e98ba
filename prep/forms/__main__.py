"""`python -m prep.forms`: the README's table of input forms, from the registry."""
from . import markdown_table

print(markdown_table())
