"""Process-wide pieces of the API: settings, errors and the response envelope, authentication, clients."""
