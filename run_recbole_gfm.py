"""RecBole-style entry point for recbole-gfm: runs this plugin's models and any RecBole model.

    python run_recbole_gfm.py --model=LightGCN --dataset=ml-100k --config_files="a.yaml b.yaml" --epochs=5
"""

from recbole_gfm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
