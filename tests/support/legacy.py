"""The ids versions before DEPLOYMENT_ID gave the CAs they uploaded, to arrange an APIM they left."""

from __future__ import annotations

import re

from shared.chain import Certificate
from shared.plan import OWNED_PREFIX


def legacy_id(cert: Certificate) -> str:
    """``trustsync-<name>-<SHA-1 thumbprint>``: the name's words cut to what 80 characters left."""
    slug = "-".join(re.findall(r"[a-z0-9]+", cert.common_name.lower()))[:29].strip("-") or "ca"
    return f"{OWNED_PREFIX}{slug}-{cert.sha1_thumbprint.lower()}"
