"""Audiences: named rules over residents, contacts and loudspeakers; arrives with the broadcast engine."""
