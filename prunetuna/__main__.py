from prunetuna.cli import main

main()
