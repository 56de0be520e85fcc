"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for the DICOMweb tests.

Orthanc 1.10 cannot bind to loopback alone, so it runs in a network namespace of its own
(``unshare -n``, loopback up, nothing else): it is unreachable from anywhere but that
namespace, and the test's clients run inside it with ``nsenter``. Skipped, loudly, only
where Orthanc, its DICOMweb plugin or network namespaces are not available.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

USER, PASSWORD = "sagittal", "test-secret"
PORT = 8042  # inside the namespace: nothing else listens there


def _loud_skip(why: str) -> None:
    banner = "#" * 78
    sys.stderr.write(f"\n{banner}\n# WARNING: the Orthanc DICOMweb tests are SKIPPED: {why}\n"
                     f"# scripts/test installs Debian's orthanc and orthanc-dicomweb when it runs as root.\n{banner}\n")
    pytest.skip(f"ORTHANC DICOMWEB TESTS SKIPPED: {why}")


def _plugin() -> str | None:
    try:
        listed = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    found = [ln for ln in listed.splitlines() if "DicomWeb" in ln and ln.endswith(".so")]
    found += glob.glob("/usr/share/orthanc/plugins/*DicomWeb*.so") + glob.glob("/usr/lib/orthanc/*DicomWeb*.so*")
    return next((p for p in found if os.path.isfile(p)), None)


@dataclass
class Orthanc:
    pid: int
    url: str
    env: dict[str, str]

    def run(self, args: Sequence[str], *, auth: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command inside Orthanc's network namespace (credentials in its environment)."""
        env = dict(self.env)
        if not auth:
            env.pop("SAGITTAL_DICOMWEB_USER")
            env.pop("SAGITTAL_DICOMWEB_PASSWORD")
        return subprocess.run(["nsenter", "-t", str(self.pid), "-n", *args], capture_output=True, text=True,
                              env=env, timeout=timeout)

    def sagittal(self, *args: str, auth: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "sagittal.cli", *args], auth=auth)

    def python(self, code: str) -> object:
        """Run ``code`` in the namespace; it prints one JSON value, which is returned."""
        res = self.run([sys.executable, "-c", code])
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory) -> Iterator[Orthanc]:
    exe = shutil.which("Orthanc")
    if exe is None:
        _loud_skip("Orthanc is not installed (Debian package 'orthanc')")
    plugin = _plugin()
    if plugin is None:
        _loud_skip("the Orthanc DICOMweb plugin is not installed (Debian package 'orthanc-dicomweb')")
    if shutil.which("unshare") is None or shutil.which("nsenter") is None or shutil.which("ip") is None:
        _loud_skip("unshare/nsenter/ip are missing: Orthanc 1.10 listens on every address and must run in its own "
                   "network namespace")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        _loud_skip("cannot create a network namespace here (unshare -n needs CAP_SYS_ADMIN); Orthanc 1.10 would "
                   "listen on every address")
    root = tmp_path_factory.mktemp("orthanc")
    config = {
        "Name": "sagittal-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "HttpPort": PORT, "DicomPort": 4242, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(["unshare", "-n", "sh", "-c", f'ip link set lo up && exec "{exe}" "{root}/orthanc.json"'],
                            stdout=log, stderr=subprocess.STDOUT)
    env = {**os.environ, "SAGITTAL_DICOMWEB_USER": USER, "SAGITTAL_DICOMWEB_PASSWORD": PASSWORD}
    env.pop("SAGITTAL_DICOMWEB_TOKEN", None)
    server = Orthanc(proc.pid, f"http://127.0.0.1:{PORT}/dicom-web", env)
    probe_code = (f"import urllib.request as u, base64; r = u.Request('http://127.0.0.1:{PORT}/system', headers="
                  f"{{'Authorization': 'Basic ' + base64.b64encode(b'{USER}:{PASSWORD}').decode()}}); "
                  "print(u.urlopen(r, timeout=2).status)")
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Orthanc exited ({proc.returncode}): {(root / 'orthanc.log').read_text()[-2000:]}")
            if server.run([sys.executable, "-c", probe_code], timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"Orthanc did not answer within 30 s: {(root / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
