"""Provider emulators (Twilio, WeChat) and the loudspeaker simulator, for drills, demos and tests."""
