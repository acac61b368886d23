from reservoir.cli import main

main()
