import sys

try:
    from certkit.entry import main
except KeyboardInterrupt:  # a Ctrl-C while certkit loads: said as the commands say it, no traceback
    sys.stderr.write("Interrupted.\n")
    sys.exit(130)

sys.exit(main())
