import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(_ROOT / "bench"), str(_ROOT), str(_ROOT / "site")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

from apps.gateway.wsgi import make_application  # noqa: E402

# The comparison views run the gateway's short middleware chain too: the same shape.
application = make_application(short_chain_prefixes=("/bench/",))
