from auto_dev.cli import main

main()
