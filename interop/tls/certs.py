"""A throw-away certificate authority for the TLS tests and recordings: a CA, a server
certificate for localhost / 127.0.0.1, client certificates (valid, expired, for an unknown user,
signed by another CA), written as PEM files into a directory.

    python interop/tls/certs.py DIR

Uses the `cryptography` package (pinned in interop/pika/requirements.txt). Keys are ECDSA P-256:
quick to make, and what rustls and Erlang's ssl both accept.
"""
import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def _name(cn, org=None):
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "GB")]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(directory, stem, cert, key):
    with open(os.path.join(directory, stem + ".pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(directory, stem + ".key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def make_ca(cn):
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(ca, cn, server=False, expired=False, org=None, sans=()):
    ca_cert, ca_key = ca
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - 30 * DAY, now - DAY) if expired else (now - DAY, now + 30 * DAY)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn, org)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    names = list(sans)
    if server:
        names += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_all(directory):
    """Writes ca.pem, server.{pem,key}, client.{pem,key} (CN tls-user), nobody.* (CN nobody),
    expired.* (CN tls-user, expired), untrusted.* (CN tls-user, another CA)."""
    os.makedirs(directory, exist_ok=True)
    ca = make_ca("Lagomorph Test CA")
    other = make_ca("Untrusted CA")
    with open(os.path.join(directory, "ca.pem"), "wb") as f:
        f.write(ca[0].public_bytes(serialization.Encoding.PEM))
    _write(directory, "server", *make_leaf(ca, "localhost", server=True))
    _write(directory, "client", *make_leaf(ca, "tls-user", org="Lagomorph Tests",
                                           sans=[x509.DNSName("tls-user.example")]))
    _write(directory, "nobody", *make_leaf(ca, "nobody"))
    _write(directory, "expired", *make_leaf(ca, "tls-user", expired=True))
    _write(directory, "untrusted", *make_leaf(other, "tls-user"))
    return directory


if __name__ == "__main__":
    print(make_all(sys.argv[1]))
