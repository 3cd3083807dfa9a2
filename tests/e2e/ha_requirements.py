"""Print the pip requirements that Home Assistant would install at run time.

Runs with the Python of Home Assistant's venv. Home Assistant installs the `requirements`
of each integration it sets up and of every integration in its `dependencies` and
`after_dependencies`. It also installs those of the discovery integrations (ssdp,
zeroconf, dhcp, mqtt, ...) whose manifest key the integration carries, and auth MFA
modules add their own REQUIREMENTS while the core starts. The end-to-end tests run Home
Assistant in a network namespace with no route out, so every one of these must be
installed beforehand.

With --check, exit 1 and name every requirement that Home Assistant would consider missing.
With --skip-list, print the package names to pass to `hass --skip-pip-packages`.
"""

import ast
import json
import re
import sys
from pathlib import Path

import homeassistant
from homeassistant import bootstrap
from homeassistant.const import Platform
from homeassistant.requirements import DISCOVERY_INTEGRATIONS
from homeassistant.util.package import is_installed

PACKAGE_DIR = Path(homeassistant.__file__).parent

# Integrations the tests load besides bootstrap's own sets: the ones configuration.yaml
# and the config entries name, and victron_gx, which SSDP discovery of the simulated GX
# may start a config flow for.
EXTRA_INTEGRATIONS = {"logger", "mqtt", "ssdp", "victron_gx", "config", "frontend"}

# Packages whose pinned version is not on PyPI. Home Assistant 2026.11.0's victron_gx pins
# victron-mqtt==2026.10.3, but PyPI's newest is 2026.10.1, so the newest available version
# is installed and Home Assistant is started with --skip-pip-packages for these names.
# NOTE: victron_gx then runs against an older victron-mqtt than it was released with.
SKIP_PIP_PACKAGES = {"victron-mqtt"}


def package_name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].lower()


def read_manifest(domain: str) -> dict | None:
    path = PACKAGE_DIR / "components" / domain / "manifest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def integration_requirements(roots: set[str]) -> set[str]:
    requirements: set[str] = set()
    seen: set[str] = set()
    pending = sorted(roots)
    while pending:
        domain = pending.pop()
        if domain in seen:
            continue
        seen.add(domain)
        manifest = read_manifest(domain)
        if manifest is None:
            continue
        requirements.update(manifest.get("requirements", []))
        pending.extend(manifest.get("dependencies", []))
        pending.extend(manifest.get("after_dependencies", []))
        for discovery_domain, manifest_keys in DISCOVERY_INTEGRATIONS.items():
            if any(key in manifest for key in manifest_keys):
                pending.append(discovery_domain)
    return requirements


def auth_module_requirements() -> set[str]:
    """Module-level REQUIREMENTS of auth providers and MFA modules (pyotp, PyQRCode)."""
    requirements: set[str] = set()
    for folder in ("mfa_modules", "providers"):
        for source in sorted((PACKAGE_DIR / "auth" / folder).glob("*.py")):
            for node in ast.parse(source.read_text()).body:
                if not isinstance(node, ast.Assign):
                    continue
                if any(isinstance(t, ast.Name) and t.id == "REQUIREMENTS" for t in node.targets):
                    requirements.update(ast.literal_eval(node.value))
    return requirements


def main() -> int:
    roots = set(bootstrap.CORE_INTEGRATIONS) | set(bootstrap.DEFAULT_INTEGRATIONS)
    roots |= set(getattr(bootstrap, "LOGGING_AND_HTTP_DEPS_INTEGRATIONS", ()))
    roots |= set(getattr(bootstrap, "FRONTEND_INTEGRATIONS", ()))
    roots |= EXTRA_INTEGRATIONS
    # Every entity platform, so a discovery message for any component installs nothing.
    roots |= {platform.value for platform in Platform}
    requirements = integration_requirements(roots) | auth_module_requirements()
    skipped = {r for r in requirements if package_name(r) in SKIP_PIP_PACKAGES}
    requirements = (requirements - skipped) | {package_name(r) for r in skipped}

    if "--skip-list" in sys.argv[1:]:
        print(",".join(sorted(SKIP_PIP_PACKAGES)))
        return 0

    if "--check" in sys.argv[1:]:
        missing = sorted(r for r in requirements if not is_installed(r))
        if missing:
            print("missing requirements: " + ", ".join(missing), file=sys.stderr)
            return 1
        return 0

    for requirement in sorted(requirements, key=str.lower):
        print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
