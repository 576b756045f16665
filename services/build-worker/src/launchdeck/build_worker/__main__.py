from launchdeck.build_worker.main import main

main()
