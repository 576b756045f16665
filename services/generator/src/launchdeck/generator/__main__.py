from launchdeck.generator.main import main

main()
