from gpucluster.cli.main import main

main()
