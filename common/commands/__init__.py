"""`dcgan`'s commands, one module each, all of one shape: `add_parser(commands)` adds the
command's parser, with its options, to `dcgan`'s subparsers (common/cli.py's table) and sets
`run`; `run(args)` turns the parsed arguments into typed values, checks how they go together,
calls the functions that do the work (which take those values, never the argparse Namespace)
and returns the exit code: 0 on success alone. common/cli.py's `run_command` makes anything
else it returns, and anything it raises, a non-zero exit."""
