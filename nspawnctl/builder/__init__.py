"""``docker build`` of a Dockerfile subset over nspawnctl's own parts: the parser (parser.py)
and the steps run on images, containers and commits (steps.py)."""
