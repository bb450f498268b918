"""Delivery channels (SMS, voice, WeChat, loudspeakers) behind one protocol (the broadcast engine)."""
