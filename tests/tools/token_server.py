#!/usr/bin/env python3
"""Issue registry bearer tokens that docker-registry 2.8 accepts, for tests.

    token_server.py --key KEY --cert CERT --issuer NAME --service NAME --log FILE --tokens FILE
                    [--credentials FILE] [--anonymous-pull]

Serves GET /token?service=NAME&scope=repository:REPO:ACTIONS (scope may repeat or be absent) on
127.0.0.1 at a free port, and prints that port as the first line on stdout once it listens.

A token is a JWT signed with RS256 by `openssl dgst`, using the RSA key in KEY. Its header carries
CERT as `x5c`, and the registry accepts it when CERT is also in its `rootcertbundle`. Its claims
grant the requested actions on each requested repository, with these limits:

- With --credentials (a file containing `user:password`), a request must carry those Basic
  credentials. A request without them gets 401, unless --anonymous-pull is set, in which case it
  gets a token whose actions are cut down to `pull`. Wrong credentials always get 401.
- Without --credentials, any request gets the requested actions, or only `pull` with
  --anonymous-pull when it carries no Authorization header.

Each request is appended to the --log file as one JSON object per line. Its fields are method,
path, query (a list of [name, value] pairs), authorization, status, token_id (the issued token's
`jti`, or null) and granted (the scopes in the token). The authorization field records whether
the header was present, never its value. Each issued token is appended to the --tokens file, so
tests can check that no client prints one.
Standard library only, plus the `openssl` command.
"""

import argparse
import base64
import binascii
import json
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_LIFETIME_SECONDS = 300
# Backdated, so a registry whose clock runs slightly behind this one still accepts the token.
NOT_BEFORE_BACKDATE_SECONDS = 10


def base64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def certificate_der_base64(cert_path):
    """Return the PEM certificate at CERT_PATH as base64 DER, the form `x5c` requires."""
    with open(cert_path, encoding="ascii") as cert_file:
        lines = cert_file.read().splitlines()
    begin = lines.index("-----BEGIN CERTIFICATE-----")
    end = lines.index("-----END CERTIFICATE-----")
    return "".join(lines[begin + 1 : end])


def sign_rs256(key_path, data):
    """Sign DATA with RSASSA-PKCS1-v1_5 and SHA-256, the JWS `RS256` algorithm."""
    result = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", key_path],
        input=data,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl dgst -sign failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def parse_scope(scope):
    """Split `TYPE:NAME:ACTIONS` into its parts, or return None when it has another form.

    NAME may contain `:` in a registry with a port, so TYPE ends at the first colon and ACTIONS
    start after the last one.
    """
    resource_type, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not resource_type or not name or not actions:
        return None
    return resource_type, name, [action for action in actions.split(",") if action]


class TokenIssuer:
    """Signs tokens and records every request, from any number of handler threads."""

    def __init__(self, args):
        self.key_path = args.key
        self.certificate = certificate_der_base64(args.cert)
        self.issuer = args.issuer
        self.service = args.service
        self.anonymous_pull = args.anonymous_pull
        self.credentials = None
        if args.credentials:
            with open(args.credentials, encoding="utf-8") as credentials_file:
                user, separator, password = credentials_file.read().rstrip("\n").partition(":")
            if not separator:
                raise ValueError(f"{args.credentials}: expected user:password")
            self.credentials = (user, password)
        self.log_path = args.log
        self.tokens_path = args.tokens
        self.lock = threading.Lock()

    def issue(self, subject, access):
        """Return a signed token granting ACCESS to SUBJECT, and its `jti`."""
        now = int(time.time())
        token_id = uuid.uuid4().hex
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.certificate]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "nbf": now - NOT_BEFORE_BACKDATE_SECONDS,
            "iat": now,
            "jti": token_id,
            "access": access,
        }
        signing_input = ".".join(
            base64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = sign_rs256(self.key_path, signing_input.encode())
        return f"{signing_input}.{base64url(signature)}", token_id

    def record(self, entry, token=None):
        with self.lock:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(entry, sort_keys=True) + "\n")
            if token is not None:
                with open(self.tokens_path, "a", encoding="utf-8") as tokens:
                    tokens.write(token + "\n")


def decode_basic(header):
    """Return (user, password) from a Basic Authorization header, or None when it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, separator, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if separator else None


class TokenHandler(BaseHTTPRequestHandler):
    server_version = "lambda-image-test-token-server"

    def do_GET(self):
        issuer = self.server.issuer
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        authorization = self.headers.get("Authorization")
        entry = {
            "method": "GET",
            "path": url.path,
            "query": [list(pair) for pair in query],
            "authorization": authorization is not None,
            "token_id": None,
            "granted": [],
        }
        status, body, token = self.answer(issuer, url.path, query, authorization, entry)
        entry["status"] = status
        issuer.record(entry, token)
        self.send_json(status, body)

    def answer(self, issuer, path, query, authorization, entry):
        """Return the status, the JSON body and the issued token (or None) for one request."""
        if path != "/token":
            return 404, {"details": f"no such path {path}; tokens are at /token"}, None
        services = [value for name, value in query if name == "service"]
        if services and services != [issuer.service]:
            return 400, {"details": f"unknown service {services}; this server issues tokens for {issuer.service!r}"}, None

        subject, pull_only = self.authenticate(issuer, authorization)
        if subject is None:
            return 401, {"details": "invalid or missing credentials"}, None

        access = []
        for name, value in query:
            if name != "scope":
                continue
            # One scope parameter may hold several scopes separated by spaces.
            for scope in value.split():
                parsed = parse_scope(scope)
                if parsed is None:
                    return 400, {"details": f"invalid scope {scope!r}; expected TYPE:NAME:ACTIONS"}, None
                resource_type, resource_name, actions = parsed
                if resource_type != "repository":
                    continue
                if pull_only:
                    actions = [action for action in actions if action == "pull"]
                access.append({"type": resource_type, "name": resource_name, "actions": actions})

        token, token_id = issuer.issue(subject, access)
        entry["token_id"] = token_id
        entry["granted"] = [f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access]
        issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME_SECONDS, "issued_at": issued_at}
        return 200, body, token

    def authenticate(self, issuer, authorization):
        """Return (subject, pull_only) for the request, or (None, False) to reject it with 401."""
        if authorization is not None:
            presented = decode_basic(authorization)
            if presented is None:
                return None, False
            if issuer.credentials is not None and presented != issuer.credentials:
                return None, False
            return presented[0], False
        if issuer.credentials is not None and not issuer.anonymous_pull:
            return None, False
        return "anonymous", issuer.anonymous_pull

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="lambda-image test token server"')
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        # The default writes the request line to stderr, which the harness keeps as a log file.
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Issue docker-registry bearer tokens for tests.")
    parser.add_argument("--key", required=True, help="PEM RSA private key that signs the tokens")
    parser.add_argument("--cert", required=True, help="PEM certificate of that key, sent as x5c")
    parser.add_argument("--issuer", required=True, help="`iss` claim, equal to the registry's auth.token.issuer")
    parser.add_argument("--service", required=True, help="`aud` claim, equal to the registry's auth.token.service")
    parser.add_argument("--log", required=True, help="file to append one JSON line per request to")
    parser.add_argument("--tokens", required=True, help="file to append each issued token to")
    parser.add_argument("--credentials", help="file containing user:password that requests must send")
    parser.add_argument("--anonymous-pull", action="store_true", help="give requests without credentials pull-only tokens")
    args = parser.parse_args(argv)

    try:
        issuer = TokenIssuer(args)
    except (OSError, ValueError) as error:
        print(f"token_server.py: error: {error}", file=sys.stderr)
        return 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    server.issuer = issuer
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
