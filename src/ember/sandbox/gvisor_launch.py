"""Start one gVisor sandbox: a private root, the sandbox's cgroups, then exec runsc.

Run by the platform as ``python -I -S gvisor_launch.py <config JSON>``, as a
fresh single-threaded process (so it may attach itself to cgroups and
unshare its mount namespace). It assembles the same minimal read-only root
as the standard backend (``isolate.stage_root``), binds the function's code
at /var/task and ember's runtime at /var/runtime, then replaces itself with
``runsc do``: the function then runs on gVisor's user-space kernel, with no
network and the root read-only under a memory-backed overlay.

Standard library only, Python 3.9 syntax.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys


def main() -> None:
    config = json.loads(sys.argv[1])
    spec = importlib.util.spec_from_file_location("_ember_isolate", config["isolate"])
    isolate = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(isolate)  # type: ignore[union-attr]
    for path in config["cgroups"]:
        with open(os.path.join(path, config["attach"]), "w") as handle:
            handle.write("0")
    os.setsid()
    isolate.private_mount_namespace()
    staging = config["staging"]
    isolate.stage_root(staging, config["runtime"], config["etc"])
    isolate.bind_readonly(config["code_dir"], staging + "/var/task")
    if config.get("opt_dir"):
        isolate.bind_readonly(config["opt_dir"], staging + "/opt")
    isolate.bind_readonly(config["runtime_dir"], staging + "/var/runtime")
    command = [
        config["runsc"],
        "--root",
        config["state_dir"],
        "--network=none",
        "--platform=ptrace",
        "--ignore-cgroups",
        "do",
        "-quiet",
        "-root",
        staging,
        # runsc resolves -cwd on the host, where /var/task need not exist:
        # strong_main.py changes into it inside the sandbox instead.
        "-cwd",
        "/",
        config["interpreter"],
        "-I",
        "/var/runtime/strong_main.py",
        "--runtime-api" if config.get("custom") else config["handler"],
    ]
    os.execve(config["runsc"], command, config["env"])


if __name__ == "__main__":
    main()
