console.log("site.js from STATICFILES_DIRS");
