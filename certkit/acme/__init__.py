"""certkit's ACME server (RFC 8555, with RFC 8737 tls-alpn-01 and RFC 8738 IP identifiers).

``certkit acme serve`` lets certbot, lego, Caddy and every other ACME client
obtain and renew serverAuth-only certificates from a certkit CA, recorded in
the same inventory and revoked through the same CRL as everything else.

- :mod:`~certkit.acme.problems`: RFC 7807 problem documents with the ACME error types;
- :mod:`~certkit.acme.jws`: JWS/JWK verification (josepy, plus EdDSA), nonces' rules;
- :mod:`~certkit.acme.jws_nested`: the nested JWS of a key change and of an external account binding;
- :mod:`~certkit.acme.state`: accounts, orders, authorizations, challenges and nonces
  in the CA's inventory database (all SQL lives there, but the tables', and finalization's
  and delivered certificates' in :mod:`~certkit.acme.state_finalize`, which it inherits);
- :mod:`~certkit.acme.records`: the records it reads back (account, order, authorization, challenge),
  their timestamps and identifiers;
- :mod:`~certkit.acme.schema`: the tables, created (and brought up to date) when a server starts;
- :mod:`~certkit.acme.db`: the one adapter to the inventory's database connection;
- :mod:`~certkit.acme.issue`: the one adapter to certkit's issuing;
- :mod:`~certkit.acme.policy`: which identifiers may be ordered;
- :mod:`~certkit.acme.challenges`: http-01 and tls-alpn-01 validation;
- :mod:`~certkit.acme.server`: :class:`AcmeService`, routing and JWS authentication of every request;
- :mod:`~certkit.acme.resources`: what each RFC 8555 resource does (accounts, orders,
  authorizations, challenges, certificates, revocation);
- :mod:`~certkit.acme.revoke`: revokeCert, and who may revoke a certificate;
- :mod:`~certkit.acme.finalize`: finalizing an order, and what a busy database left to write;
- :mod:`~certkit.acme.validation`: challenge validation in worker threads;
- :mod:`~certkit.acme.response`: a response before any socket, and the media types;
- :mod:`~certkit.acme.https`: the service over HTTPS (``http.server`` and ``ssl``);
- :mod:`~certkit.acme.listener`: the server's own TLS certificate, renewed in place.
"""
