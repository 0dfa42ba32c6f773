#!/usr/bin/env python3
"""Writes a test PKI into the directory given as argv[1]:

ca.pem / ca.key            the trusted test CA
other-ca.pem               an unrelated CA (for "unknown CA")
server.pem / server.key    localhost + 127.0.0.1, valid now, chain with ca.pem
expired.pem / expired.key  localhost, expired yesterday, signed by ca.pem
"""
import datetime
import ipaddress
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

out = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)


def key():
    return ec.generate_private_key(ec.SECP256R1())


def write_key(k, name):
    with open(f"{out}/{name}", "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))


def write_cert(c, name):
    with open(f"{out}/{name}", "wb") as f:
        f.write(c.public_bytes(serialization.Encoding.PEM))


def make_ca(cn):
    k = key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(k, hashes.SHA256()))
    return k, cert


def make_leaf(ca_key, ca_cert, not_before, not_after):
    k = key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return k, cert


ca_key, ca_cert = make_ca("collector test CA")
write_key(ca_key, "ca.key")
write_cert(ca_cert, "ca.pem")
_, other = make_ca("unrelated CA")
write_cert(other, "other-ca.pem")
k, c = make_leaf(ca_key, ca_cert, now - datetime.timedelta(hours=1), now + datetime.timedelta(days=10))
write_key(k, "server.key")
write_cert(c, "server.pem")
k, c = make_leaf(ca_key, ca_cert, now - datetime.timedelta(days=10), now - datetime.timedelta(days=1))
write_key(k, "expired.key")
write_cert(c, "expired.pem")
print("OK")
