from certkit.cli import main

main(prog_name="certkit")
