"""`python -m experiments.train_ncsn --config=CONFIG --workdir=DIR`: an alias of
experiments.train (it trains every score network, not only NCSN), kept because the configs'
and docs' commands and running jobs use this name.
"""

from experiments import train

if __name__ == "__main__":
  train.run()
