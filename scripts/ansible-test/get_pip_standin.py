"""Stand-in for ansible-test's downloaded get-pip script (this machine reaches PyPI but not
the host ansible-test downloads it from): bootstrap pip with ensurepip, then install the
requested packages from PyPI."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade"] + args)
