"""`python -m syncjob_api` runs the API server (same as the `syncjob-api` console script)."""

from syncjob_api.main import main

if __name__ == "__main__":
    main()
