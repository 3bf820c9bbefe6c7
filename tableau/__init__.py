"""tableau"""
