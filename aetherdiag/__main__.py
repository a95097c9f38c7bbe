from aetherdiag.cli import main

main()
