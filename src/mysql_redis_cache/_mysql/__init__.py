"""The MySQL side: drivers that speak to the server as mysql2 does, and their pool.

`driver` adapts aiomysql and asyncmy (the handshake mysql2 sends, raw results for
`.._node.rows` to cast), `pool` pools their connections, `config` parses the MySQL
config.

May import: `.._node`, `.._support`, `.._errors`; never `.._redis`.
"""
