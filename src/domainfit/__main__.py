from domainfit.cli import main
import sys
sys.exit(main())
