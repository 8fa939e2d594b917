"""``python -m emulator``: run the emulator in the foreground and print how to point the product at it.

    python -m emulator [--page-size N] [--latency SECONDS] [--arm-audience URL] [--throttle MODEL] [--no-seed]

Seeds two self-hosted gateways and a Key Vault certificate with a root -> intermediate -> leaf
chain unless --no-seed. Stops on Ctrl-C (SIGINT) or SIGTERM.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from types import FrameType

from .certs import PEM
from .core import AZURE_ARM_AUDIENCE, Emulator
from .pki import Hierarchy, pem_secret
from .throttling import KeyVaultLimits, hourly, token_buckets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--page-size", type=int, default=25, help="items per page of every list (default 25)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each Key Vault/ARM request")
    parser.add_argument("--arm-audience", default=AZURE_ARM_AUDIENCE, help="token audience ARM requires")
    parser.add_argument(
        "--throttle",
        choices=("off", "token-buckets", "hourly"),
        default="off",
        help="ARM's documented limits (token buckets, or the hourly model) and Key Vault's (default off)",
    )
    parser.add_argument("--no-seed", action="store_true", help="start empty: no demo gateways or certificate")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    with Emulator(page_size=args.page_size, latency=args.latency, arm_audience=args.arm_audience) as emu:
        if args.throttle != "off":
            emu.arm_limits = token_buckets() if args.throttle == "token-buckets" else hourly()
            emu.keyvault_limits = KeyVaultLimits(4000, 10.0)
        if not args.no_seed:
            seed(emu)
        print("# APIM Trust Sync local emulator; paste into the product's shell:")
        for name, value in emu.environ().items():
            print(f"export {name}={shlex.quote(value)}")
        print(f"# {summary(emu)}", flush=True)
        stop.wait()
    print("# emulator stopped", flush=True)
    return 0


def seed(emu: Emulator) -> None:
    """Two self-hosted gateways and one certificate whose chain the product should make them trust."""
    emu.apim.add_gateway("gw-east", description="demo self-hosted gateway", location="East")
    emu.apim.add_gateway("gw-west", description="demo self-hosted gateway", location="West")
    pki = Hierarchy(intermediates=1, organization="Demo")  # RSA-2048, as Key Vault makes keys
    leaf = pki.issue("api.demo.example")
    emu.vault.import_certificate("demo-api-tls", pem_secret(leaf.key, [leaf.certificate, *pki.ca_certificates()]), PEM)


def summary(emu: Emulator) -> str:
    gateways = ", ".join(g.id for g in emu.apim.gateways) or "none"
    certificates = ", ".join(emu.vault.certificate_names()) or "none"
    return f"ready on {emu.url} (identity {emu.identity_endpoint}); gateways: {gateways}; certificates: {certificates}"


if __name__ == "__main__":
    sys.exit(main())
