"""Offline stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test creates a virtual environment without pip for several sanity tests and
bootstraps pip into it by running get-pip.py, which it fetches from a host outside the
package registries. This script does the same job from what is reachable: CPython's
bundled ``ensurepip`` provides a pip, which then installs the requested packages
(``pip==<version>``) from the configured package index.

scripts/sanity.sh places it in ansible-test's get-pip cache; it is not part of the
collection.
"""

import subprocess
import sys

IGNORED = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + [a for a in sys.argv[1:] if a not in IGNORED]))
