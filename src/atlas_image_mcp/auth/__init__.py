"""Sign-in over HTTP: this server as an OAuth 2.1 resource server, and each user's linked Atlas key.

One job per module, low to high: :mod:`.principal` (who signed in, as the tools see it),
:mod:`.config` (the settings these modules need, checked together), :mod:`.sealing` (short-lived
sealed tokens), :mod:`.vault` (linked keys encrypted at rest), :mod:`.issuer` (the authorization
server's metadata and keys), :mod:`.verifier` (access tokens), :mod:`.accounts` (linked keys on
the store), :mod:`.guard` (the HTTP layer: challenges, scopes), :mod:`.linkpage` (the page that
links a key), :mod:`.front` (well-known documents and the page, outside the MCP layers),
:mod:`.elicit` (asking a user to link a key, inside the MCP layer). The whole story is in
docs/oauth.md. Importing this package imports none of them.
"""
