from convcost.cli.app import main

main()
