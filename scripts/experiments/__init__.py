"""The paper's figures and tables on MNIST digits: one script per figure or table, sharing
digits.py (models, rendering, similarity, Frechet distance, the digit classifier, MNIST, device).
"""
