"""The example inventory and the test rig's inventory describe the same deployment: their
group_vars are identical, so what the multi-host tests prove holds for the example users copy."""

from __future__ import annotations

from pathlib import Path

import yaml

INVENTORIES = Path(__file__).resolve().parents[1] / "ansible/inventories"
# The test rig's vault is made by the tests (gitignored); a real inventory commits its own.
GENERATED = {"all/vault.yml"}


def group_vars(inventory: str) -> dict[str, str]:
    root = INVENTORIES / inventory / "group_vars"
    files = {str(path.relative_to(root)): path.read_text() for path in root.rglob("*.yml")}
    return {name: text for name, text in files.items() if name not in GENERATED}


def test_example_multi_and_test_multi_share_their_group_vars():
    example, tested = group_vars("example-multi"), group_vars("test-multi")
    assert example.keys() == tested.keys()
    assert example == tested


def test_both_multi_host_inventories_have_the_same_hosts_and_groups():
    def layout(inventory: str) -> dict[str, list[str]]:
        children = yaml.safe_load((INVENTORIES / inventory / "hosts.yml").read_text())["all"]["children"]
        return {group: sorted(body["hosts"]) for group, body in children.items()}

    assert layout("example-multi") == layout("test-multi") == {
        "lb": ["lb1"], "web": ["web1", "web2"], "db": ["db1", "db2"],
    }  # fmt: skip
