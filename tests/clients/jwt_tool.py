#!/usr/bin/env python3
"""Real JWTs for the identity tests, made with PyJWT (and `cryptography`).

    jwt_tool.py hs256 SECRET_FILE CLAIMS_JSON      -> prints the token
    jwt_tool.py rsa-key DIR KID                    -> writes DIR/KID.pem, prints its public JWK
    jwt_tool.py rs256 PEM_FILE KID CLAIMS_JSON     -> prints the token
    jwt_tool.py ec-key DIR KID                     -> a P-256 key: DIR/KID.pem, prints its public JWK
    jwt_tool.py es256 PEM_FILE KID CLAIMS_JSON     -> prints the token

In CLAIMS_JSON, `exp`/`nbf`/`iat` given as strings like "+3600" or "-60" are
seconds relative to now.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def claims(text: str) -> dict:
    c = json.loads(text)
    now = int(time.time())
    for key in ("exp", "nbf", "iat"):
        if isinstance(c.get(key), str):
            c[key] = now + int(c[key])
    return c


def main(argv: list[str]) -> int:
    cmd = argv[1]
    if cmd == "hs256":
        secret = Path(argv[2]).read_text().strip()
        print(jwt.encode(claims(argv[3]), secret, algorithm="HS256"))
    elif cmd in ("rsa-key", "ec-key"):
        directory, kid = Path(argv[2]), argv[3]
        if cmd == "rsa-key":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            algorithm, alg = jwt.algorithms.RSAAlgorithm, "RS256"
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            algorithm, alg = jwt.algorithms.ECAlgorithm, "ES256"
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (directory / f"{kid}.pem").write_bytes(pem)
        public = json.loads(algorithm.to_jwk(key.public_key()))
        public.update({"kid": kid, "alg": alg, "use": "sig"})
        print(json.dumps(public))
    elif cmd in ("rs256", "es256"):
        pem = Path(argv[2]).read_bytes()
        alg = cmd.upper()
        print(jwt.encode(claims(argv[4]), pem, algorithm=alg, headers={"kid": argv[3]}))
    else:
        print(f"unknown command {cmd!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
