"""Sans-IO pieces of frp's wire protocol: framing, messages, auth, crypto, compression."""
